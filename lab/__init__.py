"""netlab-style socket lab: echo programs in containers, an orchestrator that joins their views.

Importing `lab` must stay free of third-party imports: `lab.echo` and `lab.shaper` run inside
containers that have only the standard library.
"""

__version__ = "0.1.0"
