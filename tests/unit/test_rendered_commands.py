"""Every shipped scenario's rendered commands parse with the programs' own parsers.

The model validates a scenario; the containers then parse what the renderer made of it. Where the
two disagree, a scenario passes `lab run`'s validation and fails inside a container. This renders
each scenario and runs every echo server, echo client and shaper command line (and the shaper
`set` lines of its impair faults) through the in-container parsers, without Docker.
"""

from __future__ import annotations

import pytest

from lab.compose import render
from lab.echo import client as echo_client
from lab.echo import server as echo_server
from lab.home import project_root
from lab.learner import launch
from lab.scenario import Impairment, load_scenario, scenario_names
from lab.shaper import cli as shaper_cli
from lab.shaper.impairment import FIELDS
from lab.shaper.impairment import Impairment as ShaperImpairment

SCENARIOS = project_root() / "scenarios"
PROGRAM = {"server": ["python3", "-m", "lab.echo", "server"], "client": ["python3", "-m", "lab.echo", "client"],
           "shaper": ["python3", "-m", "lab.shaper"], "program": ["python3", "-m", "lab.learner", "run"]}


def parsed(parse, argv: list[str], capsys):
    """parse(argv), with a refusal (argparse's exit, the client's OptionError) as a test failure."""
    try:
        return parse(argv)
    except (SystemExit, echo_client.OptionError, shaper_cli.ImpairmentError) as exc:
        pytest.fail(f"refused {argv}: {exc!r} {capsys.readouterr().err.strip()}")


def program_args(command: list[str], role: str) -> list[str]:
    """The program's own arguments: past a `sh -c 'sleep N && exec "$@"'` wrapper, past the
    program, with compose's `$$` read back as `$`."""
    if command[0] == "sh":
        command = command[command.index("start-after") + 1:]
    assert command[:len(PROGRAM[role])] == PROGRAM[role]
    return [arg.replace("$$", "$") for arg in command[len(PROGRAM[role]):]]


def shaper_view(impair: Impairment) -> ShaperImpairment:
    return ShaperImpairment.from_dict(impair.model_dump(include=set(FIELDS)))


def client_plan(argv: list[str]):
    return echo_client.plan_from_args(echo_client.build_parser().parse_args(argv))


def shaper_run(argv: list[str]):
    args = shaper_cli.build_parser().parse_args(argv)
    return args, shaper_cli.requested_impairment(args)


@pytest.mark.parametrize("name", scenario_names(SCENARIOS))
def test_every_rendered_command_parses_with_the_in_container_parsers(name, capsys):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    services = render(scenario)["services"]
    roles = {service: spec["labels"]["io.socketlab.role"] for service, spec in services.items()}
    assert sorted(s for s, r in roles.items() if r == "client") == sorted(scenario.client_names())

    if scenario.server.program:
        launched = parsed(launch.build_parser().parse_args, program_args(services["server"]["command"], "program"), capsys)
        assert launched.target == scenario.server.program.mount_target() and launched.args == scenario.server.program.args
    else:
        settings = parsed(echo_server.parse_settings, program_args(services["server"]["command"], "server"), capsys)
        assert (list(settings.protos), settings.port, settings.mode) == (
            scenario.server.proto, scenario.server.port, scenario.server.mode)

    for client in scenario.client_names():
        spec = scenario.client(client)
        if spec.program:
            argv = program_args(services[client]["command"], "program")
            launched = parsed(launch.build_parser().parse_args, argv, capsys)
            assert (launched.target, launched.args) == (spec.program.mount_target(), spec.program.args)
            continue
        plan = parsed(client_plan, program_args(services[client]["command"], "client"), capsys)
        assert list(plan.protos) == spec.proto and (plan.interval, plan.timeout) == (spec.interval, spec.timeout)
        if spec.messages is not None:
            assert [m.decode() for m in plan.messages] == spec.messages
        if spec.message_size is not None:
            assert {len(m) for m in plan.messages} == {spec.message_size}

    shapers = [s for s, r in roles.items() if r == "shaper"]
    assert sorted(shapers) == sorted(f"{s}-shaper" for s in ["server", *scenario.client_names()]
                                     if scenario.impair_of(s) is not None)
    for shaper in shapers:
        declared = scenario.impair_of(shaper.removesuffix("-shaper"))
        args, impairment = parsed(shaper_run, program_args(services[shaper]["command"], "shaper"), capsys)
        assert args.command == "run" and args.direction == declared.direction
        assert impairment == shaper_view(declared)

    for fault in scenario.faults:
        if fault.action != "impair":
            continue
        # What a fault and its undo send to the live shaper (lab/faults.py): the values whole.
        for values in (fault.impair, scenario.impair_of(fault.target)):
            args, impairment = parsed(shaper_run, ["set", "--clear", *values.shaper_args(direction=False)], capsys)
            assert args.clear and impairment == shaper_view(values)


def test_a_scenario_with_impair_faults_is_among_those_checked():
    kinds = {fault.action for name in scenario_names(SCENARIOS)
             for fault in load_scenario(SCENARIOS / f"{name}.yaml").faults}
    assert "impair" in kinds
