"""A learner's own program in a lab container, observed without changing it (stdlib only).

- `launch`: runs the program (a Python file, a folder with `main.py`, or a command in the
  image), timestamps every line it prints on stdout and stderr into records, bounds what it
  keeps, and for Python programs notes each `bind`, `connect` and `sendto` the program makes
  (Python's audit hooks: no capability, no change to the program).
- `watch`: a sidecar that shares the host's network namespace and records its socket table as
  sockets open, change state and close (`procnet` reads the kernel's tables).

`python3 -m lab.learner run|watch --help`.
"""
