"""`make down` signals only the processes `make up` started: a stale PID file's pid may be someone else's now."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from ops import stack


def test_a_pid_file_names_only_the_process_that_wrote_it(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "RUN", tmp_path)
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.1)  # start times count clock ticks (10 ms): the bystander starts later, as a reused pid would
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stack.write_pid("app", ours.pid)
        assert stack.pid_of("app") == ours.pid

        # the same pid file, as if the pid had since been reused by another process
        recorded = json.loads((tmp_path / "app.pid").read_text())
        (tmp_path / "app.pid").write_text(json.dumps({**recorded, "pid": bystander.pid}))
        assert stack.pid_of("app") is None, "a reused pid is not ours"
        assert not (tmp_path / "app.pid").exists()

        (tmp_path / "old.pid").write_text(str(bystander.pid))  # an old-style file naming a foreign process
        monkeypatch.setattr(stack.services, "BIN", tmp_path / "elsewhere")
        assert stack.pid_of("old") is None
        stack.down()
        assert bystander.poll() is None and ours.poll() is None, "down() signalled nothing it did not start"
    finally:
        ours.kill()
        bystander.kill()
