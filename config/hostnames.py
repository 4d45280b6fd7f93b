"""The host name a process reports to Airflow (`[core] hostname_callable = config.hostnames.hostname`).

Airflow records it on every task instance it runs. The native cluster (ops/cluster.py) runs its
Celery workers on one machine, standing in for separate hosts: each gets its own MLOPS_HOSTNAME, so
the task instances say which worker ran them. Anywhere else it is the machine's name, as by default.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """MLOPS_HOSTNAME when set, else the fully qualified name Airflow would use."""
    return os.environ.get("MLOPS_HOSTNAME") or socket.getfqdn()
