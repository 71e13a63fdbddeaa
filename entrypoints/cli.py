"""The `chatbots` command: serve the API, work background jobs, migrate the database,
administer users."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from entrypoints.settings import Settings


def _prepare_metrics_directory() -> None:
    """prometheus-client's multiprocess mode (entrypoints/api/metrics.py) adds up every file in
    PROMETHEUS_MULTIPROC_DIR: those a previous run left would count again. Cleared here, once,
    before any worker starts (a worker cannot: it would delete the files of the others)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    _prepare_metrics_directory()
    uvicorn.run(
        "entrypoints.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        reload=args.reload,
        log_level="info",
        server_header=False,  # no "Server: uvicorn": nothing to tell a scanner what we run
        # The API logs its own errors; uvicorn's access log costs ~10% throughput.
        access_log=args.access_log,
        # Uvicorn would believe X-Forwarded-For from FORWARDED_ALLOW_IPS (127.0.0.1 by default)
        # and overwrite the peer before the app sees it: CHATBOTS_TRUSTED_PROXIES alone decides.
        proxy_headers=False,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from adapters.sqlalchemy.migrations_runner import upgrade

    settings = Settings()
    if settings.uses_memory:
        print("in-memory storage has nothing to migrate")
        return 0
    upgrade(settings.database_url, args.revision)
    print(f"database migrated to {args.revision}")
    from entrypoints.worker import create_job_schema

    print(create_job_schema(settings))  # the job engine's own tables (idempotent)
    return 0


def _worker(_args: argparse.Namespace) -> int:
    from entrypoints.worker import run_worker

    return run_worker()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise SystemExit("the passwords differ")
    return first


def _create_admin(args: argparse.Namespace) -> int:
    from application.errors import ApplicationError
    from domain.errors import DomainError
    from entrypoints.bootstrap import build_container, shutdown

    password = _read_password(args)

    async def create() -> str:
        container = build_container(Settings())
        try:
            user = await container.identity().create_admin(
                args.email, password, args.display_name or args.email.split("@")[0]
            )
            return user.email
        finally:
            await shutdown(container)

    try:
        email = asyncio.run(create())
    except (ApplicationError, DomainError) as error:
        print(f"error: {getattr(error, 'detail', '') or error}", file=sys.stderr)
        return 1
    print(f"admin {email} created")
    return 0


def _seed(_args: argparse.Namespace) -> int:
    from entrypoints.bootstrap import build_container, shutdown
    from entrypoints.seed import seed_example_bot

    async def seed() -> bool:
        container = build_container(Settings())
        try:
            return await seed_example_bot(container.uow_factory(), container.clock())
        finally:
            await shutdown(container)

    print("example bot created" if asyncio.run(seed()) else "example bot already exists")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatbots", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(handler=_migrate)

    worker = commands.add_parser(
        "worker", help="work background jobs until SIGTERM (scales apart from `serve`)"
    )
    worker.set_defaults(handler=_worker)

    admin = commands.add_parser(
        "create-admin", help="create an admin account (password from a prompt or stdin)"
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--display-name", default=None)
    admin.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    admin.set_defaults(handler=_create_admin)

    seed = commands.add_parser("seed", help="create the example bot unless it exists")
    seed.set_defaults(handler=_seed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
