from mispers.cli import app

app()
