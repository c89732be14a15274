"""`oncotwin serve`, `oncotwin audit verify` and `oncotwin users ...`: run and administer the service.

Kept free of JAX and FastAPI at import time so that `oncotwin --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .cli_common import DbOption, JsonOption, console, emit, input_errors, open_store

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
users_app = typer.Typer(help="Service users, roles and care teams.", no_args_is_help=True)


@audit_app.callback()
def _audit() -> None:
    """The hash-chained audit log (keeps `verify` a subcommand)."""


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Background jobs run at the same time.")] = 1,
) -> None:
    """Run the clinical service (API and dashboard) with uvicorn.

    Secrets come from the environment: ONCOTWIN_SECRET_KEY signs access tokens and
    ONCOTWIN_PSEUDONYM_KEY keys research pseudonyms (keep both stable across restarts).
    """
    import dataclasses

    import uvicorn

    from .service import Settings, create_app

    settings = dataclasses.replace(Settings.from_env(db), job_workers=workers)
    with input_errors():
        app = create_app(settings)
    # No uvicorn access log: URLs hold patient ids. The app logs route templates instead.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")


@audit_app.command("verify")
def audit_verify(
    db: DbOption = None,
    expect_head: Annotated[
        str | None, typer.Option(help="A head hash kept outside the database.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute the audit log's hash chain; exit 1 when an entry was edited or deleted."""
    from .store.audit import AuditLog

    with input_errors():
        store = open_store(db)
    try:
        v = AuditLog(store).verify(expect_head)
    finally:
        store.close()
    if as_json:
        emit({"ok": v.ok, "n_entries": v.n_entries, "head": v.head, "problems": v.problems})
    elif v.ok:
        console().print(f"audit log intact: {v.n_entries} entries, head {v.head}")
    else:
        err = console(stderr=True)
        err.print(f"[bold red]audit log TAMPERED[/]: {len(v.problems)} problem(s)")
        for p in v.problems:
            err.print(f"  - {p}", highlight=False)
    if not v.ok:
        raise typer.Exit(1)


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="clinician, researcher or admin.")],
    team: Annotated[list[str] | None, typer.Option(help="Care team (repeatable; created).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a user and print their API token once (it is stored only as a hash)."""
    from .errors import StoreError
    from .store.security import Security

    with input_errors():
        store = open_store(db)
        try:
            sec = Security(store)
            for t in team or []:
                sec.add_team(t)
            user, token = sec.add_user(name, role, team or [])
        except StoreError as exc:  # e.g. the name is taken
            console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        finally:
            store.close()
    if as_json:
        emit({"name": user.name, "role": user.role, "teams": list(user.teams), "token": token})
        return
    console().print(f"user {user.name} ({user.role}; teams: {', '.join(user.teams) or 'none'})")
    console().print("API token (shown once, keep it secret):")
    typer.echo(token)


@users_app.command("list")
def users_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every user with role, teams and whether the account is active."""
    from .store.security import Security

    with input_errors():
        store = open_store(db)
        try:
            users = Security(store).users()
        finally:
            store.close()
    rows: list[dict[str, Any]] = [{"name": u.name, "role": u.role, "teams": list(u.teams), "active": u.active}
            for u in users]  # fmt: skip
    if as_json:
        emit(rows)
        return
    for r in rows:
        state = "" if r["active"] else " (disabled)"
        console().print(f"{r['name']}: {r['role']}; teams {', '.join(r['teams']) or '-'}{state}")


@users_app.command("token")
def users_token(name: str, db: DbOption = None) -> None:
    """Issue a new API token for a user (the old one stops working); printed once."""
    from .store.security import Security

    with input_errors():
        store = open_store(db)
        try:
            token = Security(store).rotate_token(name)
        finally:
            store.close()
    typer.echo(token)


@users_app.command("assign")
def users_assign(patient: str, team: str, db: DbOption = None) -> None:
    """Put a stored patient in the care of a team (the team is created if needed)."""
    from .store.security import Security

    with input_errors():
        store = open_store(db)
        try:
            sec = Security(store)
            sec.add_team(team)
            sec.assign_patient(patient, team)
        finally:
            store.close()
    console().print(f"patient {patient} is in the care of team {team}")
