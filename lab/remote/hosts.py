"""``python -m lab hosts``: the workers a scheduler sees, and where the server and load
hosts differ in what can change a measurement (the lab's version, the servers', Python)."""

from tabulate import tabulate

from lab.matrix.remote import Remote
from lab.remote.cluster import LAB, Host, connect, hosts

PYTHON = "Python"


def listed(remote: Remote) -> list[Host]:
    """The scheduler's workers; ``SchedulerUnreachable`` when it does not answer."""
    with connect(remote) as client:
        return hosts(client)


def render(found: list[Host]) -> str:
    """The table, then one line per difference or missing role."""
    if not found:
        return ("no worker is connected to the scheduler: start one per host with "
                '`dask worker SCHEDULER --resources "server=1"` (or "loadgen=1")')
    rows = [(h.worker, h.name, h.address, ", ".join(h.roles) or "—", h.cores, h.cpu_model,
             h.python, h.versions.get(LAB, "?")) for h in found]
    table = tabulate(rows, headers=("worker", "host name", "address", "roles", "cores",
                                    "CPU model", "Python", LAB))
    return "\n".join([table, *warnings(found)])


def warnings(found: list[Host]) -> list[str]:
    """A missing role, each version that differs among the hosts with a role, and each load
    host without wrk."""
    out = [f"no {label} host (no worker with resources {role}=1)"
           for role, label in (("server", "server"), ("loadgen", "load"))
           if not any(role in h.roles for h in found)]
    return out + differences(found) + without_wrk(found)


def without_wrk(found: list[Host]) -> list[str]:
    """Load hosts where engine "auto" falls back to the Python client."""
    return [f"load host {h.name} ({h.address}) has no wrk: closed-loop cells with engine "
            "\"auto\" measure with the Python client rawhttp (apt-get install wrk there)"
            for h in found if "loadgen" in h.roles and "wrk" not in h.tools]


def differences(found: list[Host]) -> list[str]:
    """One line per version that is not the same on every server and load host, e.g.
    ``versions differ: uvicorn 0.54.0 on server host a (10.0.0.1), 0.53 on load host b
    (10.0.0.2)``."""
    used = [h for h in found if h.roles]
    keys = dict.fromkeys(k for h in used for k in [LAB, *h.versions, PYTHON])
    out = []
    for key in keys:
        values = [_version(h, key) for h in used]
        if len(set(values)) > 1:
            where = ", ".join(f"{v} on {_role(h)} host {h.name} ({h.address})"
                              for h, v in zip(used, values, strict=True))
            out.append(f"versions differ: {key} {where}")
    return out


def _version(host: Host, key: str) -> str:
    return host.python if key == PYTHON else host.versions.get(key, "unknown")


def _role(host: Host) -> str:
    return " and ".join("load" if r == "loadgen" else r for r in host.roles)
