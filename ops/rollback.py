"""`python -m ops.rollback` (`make rollback`): move `champion` back to `previous`, recorded like a promotion."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from config.settings import Settings, registry_config
    from model import lifecycle
    from model.errors import ModelError
    from model.registry import connect
    from plugins.mlops_platform.hooks import PlatformMongoHook

    parser = argparse.ArgumentParser(prog="python -m ops.rollback", description=__doc__)
    parser.parse_args(argv)
    settings = Settings()
    try:
        registry = connect(registry_config(settings))
        with PlatformMongoHook(settings) as mongo:
            result = lifecycle.rollback(registry, mongo.get_conn())
    except (ModelError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
