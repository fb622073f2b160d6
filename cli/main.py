"""Entry point of the `deepntk` command."""

from __future__ import annotations

import sys

import click

from ..base.version import __version__
from .common import show_warnings_briefly
from .interrupts import report_interrupt, terminate_as_interrupt


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deepntk")
def cli():
    """Deep narrow ReLU networks and their infinite-depth neural tangent kernels (Lee et al., ICML 2022)."""
    show_warnings_briefly()


def _register():
    from . import (backends_cmd, bench_cmd, compare_cmd, gram_cmd, init_cmd, limit_cmd, ntk_cmd,
                   predict_cmd, reproduce_cmd, simulate_cmd, train_cmd)

    for module in (backends_cmd, init_cmd, ntk_cmd, limit_cmd, gram_cmd, simulate_cmd, train_cmd, reproduce_cmd,
                   predict_cmd, compare_cmd, bench_cmd):
        cli.add_command(module.command)


_register()


def main(argv=None) -> int:
    """Run the CLI; every usage error prints one line `Error: …` and exits with status 2; Ctrl-C and SIGTERM
    print one line saying what is kept and exit with status 130 and 143 (deepntk.cli.interrupts)."""
    ctx = None
    try:
        with terminate_as_interrupt():
            # Not cli.main(): it turns an interrupt into Abort after printing a blank line.
            ctx = cli.make_context("deepntk", list(sys.argv[1:] if argv is None else argv))
            with ctx:
                cli.invoke(ctx)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM raised as Terminated
        return report_interrupt(ctx, exc)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
