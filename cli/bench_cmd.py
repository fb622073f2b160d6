import click

@click.command("bench")
def command():
    """Benchmark (placeholder until written)."""

