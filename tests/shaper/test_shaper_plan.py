"""Impairment validation and the planner's command lines (pure: no root, no kernel)."""

from __future__ import annotations

import pytest

from lab.shaper.impairment import Impairment, ImpairmentError, check_field, format_rate, parse_rate
from lab.shaper.plan import CHAIN_IN, CHAIN_OUT, DUP_MARK, netem_args, plan, queue_config, tbf_args


def test_rate_text_round_trips_through_bits():
    assert parse_rate("1mbit") == 1_000_000
    assert parse_rate("500Kbit") == 500_000
    assert parse_rate("2mbps") == 16_000_000  # tc: bps is bytes per second
    assert parse_rate("1.5mbit") == 1_500_000
    assert format_rate(1_500_000) == "1500kbit"
    assert format_rate(parse_rate("10mbit")) == "10mbit"


@pytest.mark.parametrize("text", ["", "fast", "1", "1 mbit", "-1mbit", "1mbits", "4kbit"])
def test_bad_rates_are_refused_with_the_value_named(text):
    with pytest.raises(ImpairmentError, match="rate"):
        parse_rate(text)


@pytest.mark.parametrize("field,value", [
    ("loss", 1.5), ("loss", -0.1), ("corrupt", float("nan")), ("delay_ms", -1),
    ("jitter_ms", float("inf")), ("duplicate", True), ("reorder", "0.1"), ("delay_ms", 60_001),
])
def test_out_of_range_values_are_refused(field, value):
    with pytest.raises(ImpairmentError, match=field.replace("_", "-")):
        check_field(field, value)
    with pytest.raises(ImpairmentError):
        Impairment(**{field: value})


def test_reorder_needs_a_delay_to_reorder_against():
    with pytest.raises(ImpairmentError, match="bad --reorder 0.2: needs --delay-ms > 0"):
        Impairment(reorder=0.2)
    assert Impairment(delay_ms=10, reorder=0.2).reorder == 0.2


def test_jitter_is_at_most_the_delay_it_varies():
    with pytest.raises(ImpairmentError, match=r"bad --jitter-ms 20: must not exceed --delay-ms \(10\)") as info:
        Impairment(delay_ms=10, jitter_ms=20)
    assert (info.value.field, info.value.rule_text(str)) == ("jitter_ms", "must not exceed delay_ms (10): "
                                                                          "jitter is +/- around the delay")
    assert Impairment(delay_ms=10, jitter_ms=10).jitter_ms == 10


def test_merge_keeps_unchanged_fields_and_can_remove_the_rate():
    live = Impairment(delay_ms=50, loss=0.1, rate_bits=1_000_000)
    changed = live.merged({"loss": 0.3})
    assert (changed.delay_ms, changed.loss, changed.rate_bits) == (50, 0.3, 1_000_000)
    assert live.merged({"rate": None}).rate_bits is None
    with pytest.raises(ImpairmentError, match="unknown"):
        live.merged({"latency": 3})


def test_record_form_has_every_parameter_and_reads_back():
    impairment = Impairment(delay_ms=20, jitter_ms=5, loss=0.1, duplicate=0.01, reorder=0.25,
                            corrupt=0.02, rate_bits=2_000_000)
    data = impairment.to_dict()
    assert set(data) == {"delay_ms", "jitter_ms", "loss", "duplicate", "reorder", "corrupt", "rate"}
    assert data["rate"] == "2mbit"
    assert Impairment.from_dict(data) == impairment


def test_netem_plan_formats_every_parameter_in_tc_syntax():
    impairment = Impairment(delay_ms=50, jitter_ms=10.5, loss=0.1, duplicate=0.01, reorder=0.25,
                            corrupt=0.002, rate_bits=1_000_000)
    assert netem_args(impairment) == [
        "delay", "50ms", "10.5ms", "loss", "random", "10%", "duplicate", "1%", "reorder", "25%",
        "corrupt", "0.2%", "rate", "1mbit", "limit", "10000"]
    steps = plan(impairment, "netem", "eth0", "egress")
    assert steps.setup == []
    assert steps.apply == [["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", *netem_args(impairment)]]
    assert ["tc", "qdisc", "del", "dev", "eth0", "root"] in steps.teardown


def test_netem_ingress_goes_through_an_ifb():
    steps = plan(Impairment(delay_ms=5), "netem", "eth0", "ingress")
    assert ["ip", "link", "add", "shp-eth0", "type", "ifb"] in steps.setup
    assert any("mirred" in c and c[-1] == "shp-eth0" for c in steps.setup)
    assert steps.apply == [["tc", "qdisc", "replace", "dev", "shp-eth0", "root", "netem", "delay", "5ms",
                            "limit", "10000"]]
    assert ["ip", "link", "del", "shp-eth0"] in steps.teardown
    both = plan(Impairment(delay_ms=5), "netem", "eth0", "both")
    assert [c[4] for c in both.apply] == ["eth0", "shp-eth0"]


def test_no_impairment_removes_the_netem_qdisc():
    assert plan(Impairment(), "netem", "eth0", "egress").apply == [["tc", "qdisc", "del", "dev", "eth0", "root"]]


def test_userspace_loss_is_a_statistic_rule_per_direction():
    steps = plan(Impairment(loss=0.1), "userspace", "eth0", "both", queue_num=7)
    rules = [c for c in steps.apply if "-A" in c]
    assert len(rules) == 2
    for rule, chain in zip(rules, (CHAIN_OUT, CHAIN_IN), strict=False):
        assert rule[:4] == ["iptables", "-w", "-A", chain]
        assert rule[rule.index("--probability") + 1] == "0.1"
        assert rule[rule.index("--queue-num") + 1] == "8"  # the drop queue, not the hold queue
        assert "--queue-bypass" in rule
    assert ["iptables", "-w", "-I", "OUTPUT", "1", "-o", "eth0", "-j", CHAIN_OUT] in steps.setup
    assert ["iptables", "-w", "-I", "INPUT", "1", "-i", "eth0", "-j", CHAIN_IN] in steps.setup


def test_userspace_egress_touches_only_the_output_side():
    steps = plan(Impairment(loss=0.1, delay_ms=3), "userspace", "veth1", "egress", iptables="iptables-legacy")
    text = [" ".join(c) for c in steps.commands]
    assert not any(CHAIN_IN in line or "INPUT" in line or "ifb" in line for line in text)
    assert all(c[0] != "iptables" for c in steps.commands)
    assert ["iptables-legacy", "-w", "-D", "OUTPUT", "-o", "veth1", "-j", CHAIN_OUT] in steps.teardown


def test_userspace_queue_only_when_something_needs_the_packets():
    loss_only = plan(Impairment(loss=0.2), "userspace", "eth0", "egress", queue_num=3)
    assert not any(c[-4:] == ["NFQUEUE", "--queue-num", "3", "--queue-bypass"] for c in loss_only.apply)
    delayed = plan(Impairment(delay_ms=10), "userspace", "eth0", "egress", queue_num=3)
    assert ["iptables", "-w", "-A", CHAIN_OUT, "-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"] in delayed.apply


def test_userspace_duplicates_skip_our_rules_by_mark():
    steps = plan(Impairment(duplicate=0.5), "userspace", "eth0", "egress")
    first_rule = next(c for c in steps.apply if "-A" in c)
    assert first_rule[first_rule.index("--mark") + 1] == hex(DUP_MARK)
    assert first_rule[-2:] == ["-j", "RETURN"]


def test_userspace_rate_is_tbf_and_removed_when_unset():
    steps = plan(Impairment(rate_bits=1_000_000), "userspace", "eth0", "both")
    assert ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", *tbf_args(1_000_000)] in steps.apply
    assert ["tc", "qdisc", "replace", "dev", "shp-eth0", "root", "tbf", *tbf_args(1_000_000)] in steps.apply
    unset = plan(Impairment(), "userspace", "eth0", "egress")
    assert ["tc", "qdisc", "del", "dev", "eth0", "root"] in unset.apply


def test_tbf_burst_holds_a_full_frame_at_any_rate():
    for bits in (8_000, 1_000_000, 1_000_000_000):
        args = tbf_args(bits)
        burst, limit = int(args[args.index("burst") + 1]), int(args[args.index("limit") + 1])
        assert burst >= 1514 and limit > burst


def test_queue_config_carries_what_userspace_does():
    config = queue_config(Impairment(delay_ms=5, jitter_ms=2, loss=0.3, corrupt=0.1), queue_num=9)
    assert (config.queue_num, config.drop_queue, config.delay_ms, config.jitter_ms, config.corrupt) == (9, 10, 5, 2, 0.1)


def test_unknown_backend_or_direction_is_an_error():
    with pytest.raises(ValueError, match="backend"):
        plan(Impairment(), "tc", "eth0")
    with pytest.raises(ValueError, match="direction"):
        plan(Impairment(), "netem", "eth0", "sideways")


def test_qdisc_stats_are_read_per_kind():
    from lab.shaper.backends import parse_qdisc_stats
    text = ("qdisc netem 8001: root refcnt 2 limit 10000 delay 50ms\n"
            " Sent 12345 bytes 120 pkt (dropped 3, overlimits 0 requeues 0)\n"
            " backlog 0b 0p requeues 0\n"
            "qdisc ingress ffff: parent ffff:fff1 ----------------\n"
            " Sent 900 bytes 9 pkt (dropped 0, overlimits 0 requeues 0)\n"
            " backlog 0b 0p requeues 0\n")
    assert parse_qdisc_stats(text) == {"netem": (120, 3), "ingress": (9, 0)}
    assert parse_qdisc_stats("") == {}


def test_chain_listing_gives_packets_and_target_per_rule():
    from lab.shaper.backends import parse_chain_listing
    text = ("Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)\n"
            "    pkts      bytes target     prot opt in     out     source               destination\n"
            "     17     1904 LAB-SHAPER-OUT  0    --  *      eth0    0.0.0.0/0            0.0.0.0/0\n"
            "      2      120 ACCEPT     6    --  *      *       0.0.0.0/0            0.0.0.0/0\n")
    assert parse_chain_listing(text) == [(17, "LAB-SHAPER-OUT"), (2, "ACCEPT")]


def test_ipv6_namespaces_get_every_rule_in_ip6tables_too():
    for iptables in ("iptables", "iptables-legacy"):
        steps = plan(Impairment(loss=0.1, delay_ms=20), "userspace", iptables=iptables, ipv6=True)
        every = steps.setup + steps.apply + steps.teardown
        v4 = [c[1:] for c in every if c[0] == iptables]
        v6 = [c[1:] for c in every if c[0] == iptables.replace("iptables", "ip6tables")]
        assert v4 and v4 == v6
    only_v4 = plan(Impairment(loss=0.1), "userspace")
    assert not any("ip6tables" in c[0] for c in only_v4.setup + only_v4.apply + only_v4.teardown)
