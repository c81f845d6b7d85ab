"""``finpulse users``: dashboard accounts (viewer, analyst, admin) with bcrypt-hashed passwords.

Passwords are prompted twice without echo, or read as one line from stdin with ``--password-stdin`` (scripts);
never from an argument, which would land in the shell history and the process list. Every change is audited
with the OS user, or ``--actor``, as the actor. Imports only typer at module level.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli.session import actor as actor_principal
from monitor.cli.session import cli_session

if TYPE_CHECKING:

    pass

users_app = typer.Typer(help="Dashboard accounts: add, list, set-role, disable, enable, reset-password.",
                        no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="Account (login) name.")]
Actor = Annotated[str | None, typer.Option(help="Who acts, for the audit trail (default: the OS user).")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin",
                                             help="Read the password as one line from stdin instead of prompting.")]
ROLE_HELP = "viewer (reads), analyst (also labels, acknowledges, silences) or admin (also rules, models, accounts)."


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
def add(name: Name, role: Annotated[str, typer.Option(help=ROLE_HELP)], password_stdin: PasswordStdin = False,
        actor: Actor = None) -> None:
    """Add an account, e.g. the first admin: `finpulse users add alice --role admin`."""
    from monitor.cli.user_admin import create  # lazy: startup

    password = _password(password_stdin)
    with cli_session() as session:
        account = create(session, name, role, password, by=actor_principal(actor))
        typer.echo(f"added {account.name} ({account.role})")


@users_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False) -> None:
    """List the accounts (never their password hashes)."""
    from monitor.cli.user_admin import accounts  # lazy: startup

    with cli_session() as session:
        rows = accounts(session)
    if as_json:
        for a in rows:
            typer.echo(json.dumps({"name": a.name, "role": a.role, "disabled": a.disabled,
                                   "created_at": a.created_at.isoformat(),
                                   "password_changed_at": a.password_changed_at.isoformat()}))
        return
    if not rows:
        typer.echo("no accounts; add the first admin with `finpulse users add NAME --role admin`")
    for a in rows:
        state = "DISABLED" if a.disabled else "enabled"
        typer.echo(f"{a.name:<24} {a.role:<8} {state:<9} password set {a.password_changed_at:%Y-%m-%d %H:%M} UTC")


@users_app.command("set-role")
def set_role_command(name: Name, role: Annotated[str, typer.Argument(help=ROLE_HELP)], actor: Actor = None) -> None:
    """Change an account's role (the last enabled admin cannot be demoted)."""
    from monitor.cli.user_admin import set_role  # lazy: startup

    with cli_session() as session:
        account = set_role(session, name, role, by=actor_principal(actor))
        typer.echo(f"{account.name} is now {account.role}")


@users_app.command("disable")
def disable(name: Name, actor: Actor = None) -> None:
    """Disable an account: it can no longer log in (the last enabled admin cannot be disabled)."""
    from monitor.cli.user_admin import set_disabled  # lazy: startup

    with cli_session() as session:
        typer.echo(f"disabled {set_disabled(session, name, True, by=actor_principal(actor)).name}")


@users_app.command("enable")
def enable(name: Name, actor: Actor = None) -> None:
    """Enable a disabled account again."""
    from monitor.cli.user_admin import set_disabled  # lazy: startup

    with cli_session() as session:
        typer.echo(f"enabled {set_disabled(session, name, False, by=actor_principal(actor)).name}")


@users_app.command("reset-password")
def reset_password_command(name: Name, password_stdin: PasswordStdin = False, actor: Actor = None) -> None:
    """Set a new password for an account (prompted twice, or --password-stdin)."""
    from monitor.cli.user_admin import reset_password  # lazy: startup

    password = _password(password_stdin)
    with cli_session() as session:
        typer.echo(f"password of {reset_password(session, name, password, by=actor_principal(actor)).name} changed")
