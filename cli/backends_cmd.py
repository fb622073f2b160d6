"""`deepntk backends`: which backends exist here, on which device, with which library version."""

import click

from ..backends.registry import available_backends, get_backend


@click.command("backends")
def command():
    """List every backend with its availability, device and library version."""
    rows = available_backends()
    default = get_backend(None).name
    click.echo(f"{'backend':<10} {'available':<10} {'version':<10} device / reason")
    for row in rows:
        mark = " (default)" if row["name"] == default else ""
        detail = row["device"] if row["available"] else row.get("reason", "")
        click.echo(f"{row['name']:<10} {'yes' if row['available'] else 'no':<10} {row['version']:<10} {detail}{mark}")
