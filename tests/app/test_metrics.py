"""/metrics counts the whole service, whichever gunicorn worker answers the scrape (issue #18, item 1)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from model.kinds.digits import load_digits_dataset

ROW = load_digits_dataset().X[0].tolist()
REQUESTS = 60


def _count(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))).strip(",") == wanted:
            return float(match.group(2))
    return 0.0


def _per_worker(directory: Path) -> dict[str, float]:
    """api.predict 200s by worker pid, read from each worker's own file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    out = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
            for sample in metric.samples:
                if sample.name == "mlops_http_requests_total" and sample.labels == PREDICT_200:
                    out[path.stem.split("_")[-1]] = sample.value
    return out


PREDICT_200 = {"route": "api.predict", "status": "200"}


def test_every_request_is_counted_once_across_workers(served_app):
    url = served_app.url
    directory = served_app.log.parent / "metrics"  # PROMETHEUS_MULTIPROC_DIR of the served app
    before = requests.get(f"{url}/metrics", timeout=5).text
    workers_before = _per_worker(directory)

    def send(_: int) -> int:  # a new connection each time, several at once: both workers take some
        return requests.post(f"{url}/predict", json={"instances": [ROW]}, timeout=10).status_code

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):  # which worker accepts is the kernel's call: send until both took some
            assert list(pool.map(send, range(REQUESTS))) == [200] * REQUESTS
            sent += REQUESTS
            served = {pid: n - workers_before.get(pid, 0) for pid, n in _per_worker(directory).items()}
            if len([n for n in served.values() if n > 0]) == 2:
                break
    counts = []
    for _ in range(6):  # scrapes land on either worker: each must see every worker's requests
        after = requests.get(f"{url}/metrics", timeout=5).text
        counts.append(_count(after, "mlops_http_requests_total", **PREDICT_200)
                      - _count(before, "mlops_http_requests_total", **PREDICT_200))  # fmt: skip
    assert counts == [sent] * 6
    served = {pid: n - workers_before.get(pid, 0) for pid, n in _per_worker(directory).items()}
    assert sum(served.values()) == sent
    assert len([n for n in served.values() if n > 0]) == 2, f"the requests were not spread: {served}"
    for name in ("mlops_http_request_duration_seconds_count", "mlops_model_version", "mlops_log_queue_depth",
                 "mlops_champion_last_poll_timestamp_seconds", "mlops_model_load_seconds"):  # fmt: skip
        assert name in after, name
    assert _count(after, "mlops_log_writer_alive") == 2, "one writer per worker, summed over the live ones"
