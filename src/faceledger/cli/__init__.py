"""Command-line front (Typer): parses options, calls the core, renders results."""
