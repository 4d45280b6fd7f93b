"""Create .env from .env.example, replacing each `change-me` placeholder with a fresh random secret."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from ops.services import write_private


def main(example: str, target: str) -> int:
    dst = Path(target)
    if dst.exists():
        return 0
    lines = []
    for line in Path(example).read_text().splitlines():
        if line.strip().endswith("=change-me"):
            line = line.replace("change-me", secrets.token_urlsafe(18))
        lines.append(line)
    write_private(dst, "\n".join(lines) + "\n")
    print(f"created {dst} from {example} with generated secrets (Airflow login: see AIRFLOW_ADMIN_PASSWORD)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
