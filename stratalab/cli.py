"""The ``stratalab`` command: ``server``, ``demo`` and ``keys``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _server(args: argparse.Namespace) -> int:
    from stratalab.jupyter_ext.app import StrataLab

    argv = [
        f"--ServerApp.port={args.port}",
        f"--ServerApp.ip={args.ip}",
        "--ServerApp.open_browser=False",
        "--ServerApp.port_retries=0",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")  # containers and CI run as root
    if args.data_dir:
        argv.append(f"--StrataLab.data_dir={Path(args.data_dir).resolve()}")
    if args.db_url:
        argv.append(f"--StrataLab.db_url={args.db_url}")
    if args.dask_address:
        argv.append(f"--StrataLab.dask_address={args.dask_address}")
    if args.workers is not None:
        argv.append(f"--StrataLab.n_workers={args.workers}")
    StrataLab.launch_instance(argv=argv + list(args.extra))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from stratalab.demo import run_demo

    return run_demo(Path(args.data_dir) if args.data_dir else None, workers=args.workers)


def _keys(args: argparse.Namespace) -> int:
    from stratalab.jupyter_ext.app import default_data_dir
    from stratalab.scheduler.keys import KeyManager
    from stratalab.scheduler.store import Store, sqlite_url
    from stratalab.scheduler.views import key_out

    data_dir = Path(args.data_dir or default_data_dir())
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(args.db_url or sqlite_url(data_dir))
    store.migrate()
    keys = KeyManager(store)
    try:
        if args.keys_command == "create":
            row, secret = keys.create(
                args.user, scope="admin" if args.admin else "user", name=args.name
            )
            print(json.dumps({**key_out(row), "key": secret}, indent=2))
        elif args.keys_command == "list":
            for row in keys.list():
                k = key_out(row)
                state = "revoked" if k["revoked_at"] else "active"
                print(f"{k['id']}  {k['user_id']:<16} {k['scope']:<6} {k['prefix']}…  {state}")
        else:
            row = keys.revoke(args.key_id)
            print(f"revoked {row.id}")
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also documents the commands in ``--help``)."""
    p = argparse.ArgumentParser(prog="stratalab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("server", help="run a Jupyter server with the StrataLab extension")
    s.add_argument("--port", type=int, default=8888)
    s.add_argument("--ip", default="127.0.0.1")
    s.add_argument("--data-dir")
    s.add_argument("--db-url")
    s.add_argument("--dask-address", help="join this Dask scheduler instead of starting one")
    s.add_argument("--workers", type=int, help="worker processes of the embedded cluster")
    s.add_argument(
        "extra",
        nargs=argparse.REMAINDER,
        help="more Jupyter options, e.g. --StrataLab.rate_limit_per_minute=0",
    )
    s.set_defaults(fn=_server)

    d = sub.add_parser("demo", help="start a server and show every capability end to end")
    d.add_argument("--data-dir", help="keep the demo's data here (default: a temp dir)")
    d.add_argument("--workers", type=int, default=2)
    d.set_defaults(fn=_demo)

    k = sub.add_parser("keys", help="manage API keys in the data dir's store")
    k.add_argument("--data-dir")
    k.add_argument("--db-url")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create")
    kc.add_argument("--user", required=True)
    kc.add_argument("--admin", action="store_true")
    kc.add_argument("--name", default="")
    ksub.add_parser("list")
    kr = ksub.add_parser("revoke")
    kr.add_argument("key_id")
    k.set_defaults(fn=_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stratalab`` console script."""
    args, extra = build_parser().parse_known_args(argv)
    if extra and args.command != "server":
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    # any other Jupyter option passes through, e.g. --StrataLab.rate_limit_per_minute=0
    args.extra = extra
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
