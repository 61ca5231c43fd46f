"""`onehci hash-password`"""

from __future__ import annotations

import sys

import click

from installer.errors import OnehciError


@click.command("hash-password")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from one line of stdin (for scripts).")
def hash_password(from_stdin: bool) -> None:
    """Print a SHA-512 crypt hash for access.root_password_hash.

    The password is asked twice without echo and never stored or printed.
    """
    from installer.passwords import sha512_crypt

    if from_stdin:
        raw = sys.stdin.buffer.readline()
        password = raw.removesuffix(b"\n").removesuffix(b"\r")  # LF or CRLF ends the line, nothing else
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            raise OnehciError("the password on stdin is not UTF-8 text") from None
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt="Again",
                                err=True, show_default=False)
    click.echo(sha512_crypt(password))


COMMANDS = [hash_password]
