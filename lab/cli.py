"""The `lab` command: parse arguments, call the library, render. No logic of its own.

Long only because it holds every command's argument parser: each command is a parser and one
library call, and keeping them together keeps `lab --help` and the README in step.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from lab import __version__
from lab.errors import EngineUnavailable, LabError, UsageError
from lab.home import project_root, runs_dir, scenarios_dir
from lab.records.options import OneLineParser, int_in

ENGINE_HELP = ("docker (default): this host's engine with compose; swarm: a Docker Swarm ($LAB_SWARM_HOST, "
               "else the `lab cluster`, else the current Docker context's)")
EPILOG = "Exit status: 0 success, 1 failure (a client or expectation failed), 2 bad input, 130 interrupted."


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM ends a run like Ctrl-C does: collect, tear down, keep the logs.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return args.func(args)
    except LabError as exc:
        err = console(stderr=True)
        err.print(f"lab: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        if isinstance(exc, EngineUnavailable):
            err.print(f"hint: {exc.hint}")
        return exc.exit_code
    except KeyboardInterrupt:
        console(stderr=True).print("lab: interrupted")
        return 130


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="lab", description="Run socket-level TCP/UDP echo scenarios in containers and join both views.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

    p = sub.add_parser("doctor", help="check Docker, Compose v2, images, disk; print fixes")
    p.add_argument("--engine", choices=("docker", "swarm"), default="docker",
                   help="also check the swarm a `--engine swarm` run would use")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("build", help="build the images (the base offline when no registry answers)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("list", help="the scenarios, one line each")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run a scenario and print the per-client table", epilog=EPILOG)
    p.add_argument("scenario", help="a name from `lab list`, or a path to a scenario file")
    p.add_argument("--clients", type=int_in(1, 500), help="number of clients, 1 to 500 (overrides the scenario)")
    p.add_argument("--keep", action="store_true", help="leave the containers up after the run (remove with `lab clean`)")
    p.add_argument("--engine", choices=("docker", "swarm"), default="docker", help=ENGINE_HELP)
    p.add_argument("--out", type=Path, help="directory for run directories (default: runs/)")
    p.add_argument("--no-capture", action="store_true", help="do not record the lab network's packets (no wire view)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("test", help="run scenarios as tests, several at once; write a summary and JUnit XML",
                       epilog=EPILOG)
    p.add_argument("scenarios", nargs="*", metavar="NAME", help="scenario names or globs (`udp-*`), or files "
                   "(default: all)")
    p.add_argument("-j", "--jobs", type=int_in(1, 256), default=None,
                   help="runs at once, 1 to 256 (default: 3 per CPU)")
    p.add_argument("--repeat", type=int_in(1, 1000), default=1, metavar="K",
                   help="run each scenario K times and report its pass rate")
    p.add_argument("--fail-fast", action="store_true", help="stop every run at the first that does not pass")
    p.add_argument("--junit", type=Path, default=None, help="JUnit XML file (default: <out>/junit.xml)")
    p.add_argument("--out", type=Path, help="directory for run directories (default: runs/)")
    p.add_argument("--no-capture", action="store_true", help="do not record the lab network's packets (no wire view)")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("runs", help="past runs, newest first")
    p.add_argument("--out", type=Path, help="directory of run directories (default: runs/)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("logs", help="the collected events of a run (default: the latest)")
    p.add_argument("run", nargs="?", help="run id (or a unique prefix), default the latest")
    p.add_argument("--client", help="only this client (and the server's records about it)")
    p.add_argument("--proto", choices=["tcp", "udp"])
    p.add_argument("--json", action="store_true", help="JSON lines instead of a timeline")
    p.add_argument("--out", type=Path, help="directory of run directories (default: runs/)")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("report", help="write a run's report.html: topology, table, ladders, charts (default: the latest)")
    p.add_argument("run", nargs="?", help="run id (or a unique prefix), default the latest")
    p.add_argument("--out", type=Path, help="directory of run directories (default: runs/)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("diff", help="two runs side by side: settings, metric deltas, expectation and flag changes")
    p.add_argument("run_a", metavar="RUN_A", help="run id (or a unique prefix)")
    p.add_argument("run_b", metavar="RUN_B", help="run id (or a unique prefix)")
    p.add_argument("--html", type=Path, help="where to write the page (default: RUN_B/diff-RUN_A.html)")
    p.add_argument("--out", type=Path, help="directory of run directories (default: runs/)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("clean", help="remove containers and networks left by crashed runs")
    p.add_argument("--all", action="store_true", help="also runs still in progress and plain-compose projects")
    p.add_argument("--engine", choices=("docker", "swarm"), default="docker",
                   help="swarm: the lab's stacks (services and networks) left on the swarm")
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("cluster", help="a real Docker Swarm of Docker-in-Docker nodes on this machine")
    p.add_argument("action", choices=["up", "down", "status", "load"],
                   help="up: start the nodes and form the swarm; down: remove it all; status: the nodes; "
                        "load: load the rebuilt node image into every node")
    p.add_argument("--nodes", type=int_in(1, 9), default=3, help="number of nodes for `up`, 1 to 9 (default 3)")
    p.add_argument("--name", help="the cluster's name (default: $LAB_CLUSTER, else lab-cluster)")
    p.add_argument("--image", action="store_true", help="`down` also removes the cluster node image")
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("render", help="write compose.yaml and scenarios/compose/*.yaml from the scenarios")
    p.add_argument("--check", action="store_true", help="only check that the committed files are up to date")
    p.set_defaults(func=cmd_render)
    return parser


def console(stderr: bool = False):
    from lab.report import console as make

    return make(stderr=stderr)


# ---- commands ---------------------------------------------------------------------------------

def cmd_doctor(args) -> int:
    from lab.console import doctor_in_console

    return doctor_in_console(args.engine)


def cmd_build(args) -> int:
    from lab.compose import node_image
    from lab.engine import DockerEngine
    from lab.images import build_node

    out = console()
    image_id = build_node(DockerEngine().require(), project_root(),
                          progress=lambda line: out.print(line, markup=False, highlight=False))
    out.print(f"[green]built[/] {node_image()} {image_id[7:19]}")
    return 0


def cmd_list(args) -> int:
    from lab.scenario import load_scenario, scenario_names

    directory = scenarios_dir()
    out = console()
    names = scenario_names(directory)
    if not names:
        raise UsageError(f"no scenarios in {directory}")
    width = max(len(n) for n in names)
    for name in names:
        scenario = load_scenario(directory / f"{name}.yaml")
        first = " ".join(scenario.description.split()).split(". ")[0].rstrip(".")
        out.print(f"{name:<{width}}  {first}", soft_wrap=True)
    return 0


def cmd_run(args) -> int:
    from lab.console import run_in_console

    return run_in_console(args.scenario, clients=args.clients, out_dir=args.out, keep=args.keep,
                          no_capture=args.no_capture, engine=args.engine).exit_code


def cmd_test(args) -> int:
    from lab.console import run_suite_in_console

    return run_suite_in_console(args.scenarios, out_dir=args.out, junit=args.junit, jobs=args.jobs,
                                repeat=args.repeat, fail_fast=args.fail_fast, no_capture=args.no_capture)


def cmd_runs(args) -> int:
    from lab.report import runs_table
    from lab.run import list_runs

    runs = list_runs(args.out or runs_dir())
    if not runs:
        console().print("no runs yet; try `lab run basic`")
        return 0
    console().print(runs_table(runs))
    return 0


def cmd_logs(args) -> int:
    from lab.logs import EventFile, iter_filtered
    from lab.report import timeline_lines
    from lab.run import find_run
    from lab.streams import check_streams, problems

    directory = find_run(args.out or runs_dir(), args.run)
    path = directory / "events.jsonl"
    # Read from disk on each pass, never held whole: a run's records may be gigabytes.
    events = EventFile(path) if path.exists() else []
    if args.client:
        clients = sorted({e.get("service") for e in events if e.get("role") == "client"} - {None})
        if args.client not in clients:
            raise UsageError(f"run {directory.name} has no client {args.client!r}; its clients: "
                             f"{', '.join(clients) or 'none'}")
    for problem in problems(check_streams(events).values()):
        # Said before anything is shown, on stderr so `--json` output stays records only.
        console(stderr=True).print(f"incomplete: {problem}", style="yellow", markup=False, highlight=False)

    def timeline() -> Iterator[dict]:
        return _with_wire(directory, iter_filtered(events, client=args.client, proto=args.proto),
                          args.client, args.proto)

    if args.json:
        for record in timeline():
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return 0
    out = console()
    out.print(f"# {directory.name}: {sum(1 for _ in timeline())} records", markup=False)
    for line in timeline_lines(timeline()):
        out.print(line, markup=False)
    return 0


def _with_wire(directory: Path, events: Iterable[dict], client: str | None, proto: str | None) -> Iterator[dict]:
    """The run's records with the wire's packets (and where lost round trips were lost) merged in,
    as a stream: both are in time order."""
    import heapq

    from lab.wire.file import read_wire_capture
    from lab.wire.records import wire_timeline

    def ts(record):
        return record.get("ts") or ""

    # Without a capture the wire knows nothing to add, and its wire.json (a line per message)
    # is not read at all; with one, its packets are read as a stream in time order.
    capture = read_wire_capture(directory)
    if not capture or capture.get("status") not in ("ok", "damaged"):
        return iter(events)
    return heapq.merge(events, wire_timeline(directory, client=client, proto=proto), key=ts)


def _run_dir(out: Path | None, run: str | None) -> Path:
    """A run by id or prefix in the runs directory, or a run directory given by its path."""
    from lab.run import find_run

    if run and (Path(run) / "manifest.json").is_file():
        return Path(run)
    return find_run(out or runs_dir(), run)


def cmd_report(args) -> int:
    from lab.html import write_report

    path = write_report(_run_dir(args.out, args.run))
    console().print(f"report: {path}", markup=False, highlight=False)
    return 0


def cmd_diff(args) -> int:
    from lab.html.page import write_diff
    from lab.report import comparison_tables

    comparison, path = write_diff(_run_dir(args.out, args.run_a), _run_dir(args.out, args.run_b), args.html)
    out = console()
    for table in comparison_tables(comparison):
        out.print(table)
    out.print(f"diff: {path}", markup=False, highlight=False)
    return 0


def cmd_clean(args) -> int:
    from lab.cleanup import clean
    from lab.console import open_engine

    out = console()
    result = clean(open_engine(args.engine)[0] if args.engine != "docker" else None, include_live=args.all)
    for line in result.salvaged:
        out.print(line, markup=False, soft_wrap=True)
    for project, what in result.removed.items():
        out.print(f"removed {project}: " + ", ".join(what), markup=False, soft_wrap=True)
    for project in result.kept:
        out.print(f"kept {project}: its `lab run` is still going (use --all to remove it anyway)")
    for project, why in result.failed.items():
        console(stderr=True).print(f"lab: could not clean {project}: {why}", markup=False, highlight=False, soft_wrap=True)
    if not result.removed and not result.failed:
        out.print("nothing to clean")
    return 1 if result.failed else 0


def cmd_cluster(args) -> int:
    from lab.compose import node_image
    from lab.engine import DockerEngine
    from lab.engine.swarm.cluster import Cluster
    from lab.images import build_cluster_image, build_node

    out = console()
    say = lambda line: out.print(line, markup=False, highlight=False)  # noqa: E731
    cluster = Cluster(args.name)
    if args.action == "up":
        engine = DockerEngine().require()
        build_node(engine, project_root(), progress=None)
        cluster.up(args.nodes, node_image=node_image(), progress=say,
                   build=lambda: build_cluster_image(engine, project_root(), say))
        args.action = "status"
    elif args.action == "load":
        cluster.load_image(node_image(), progress=say)
        return 0
    elif args.action == "down":
        if not cluster.down(progress=say, image=args.image):
            say(f"cluster {cluster.name}: nothing to remove")
        return 0
    from lab.report import cluster_table

    nodes = cluster.status()
    if not nodes:
        say(f"cluster {cluster.name} is not up (`lab cluster up`)")
        return 1
    out.print(cluster_table(cluster.name, nodes))
    return 0


def cmd_render(args) -> int:
    from lab.rendering import render_committed

    stale = render_committed(project_root(), scenarios_dir(), check=args.check)
    out = console()
    if args.check:
        if stale:
            out.print("out of date: " + ", ".join(str(p) for p in stale) + " (run `lab render`)")
            return 1
        out.print("compose files are up to date")
        return 0
    for path in stale:
        out.print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
