"""The shaper on a real kernel: two network namespaces, a veth pair, traffic measured across it.

Needs root, iproute2 and iptables; skipped with the reason otherwise. The userspace backend
is exercised wherever the kernel lacks netem; the netem test runs only where netem exists.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from shaper_netns import NETPROBE, NamespacePair

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="live shaper tests need root (network namespaces, iptables)"),
    pytest.mark.skipif(not (shutil.which("ip") and shutil.which("tc") and shutil.which("iptables")),
                       reason="live shaper tests need iproute2 (ip, tc) and iptables"),
    pytest.mark.timeout(60),
]


@pytest.fixture
def pair():
    namespaces = NamespacePair()
    try:
        yield namespaces
    finally:
        namespaces.close()


@pytest.fixture
def echo_pair(pair):
    pair.serve("echo")
    return pair


def _kernel_netem_error(pair: NamespacePair) -> str | None:
    done = pair.run(pair.a, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms", check=False)
    if done.returncode == 0:
        pair.run(pair.a, "tc", "qdisc", "del", "dev", "lo", "root")
        return None
    return done.stderr.strip()


def test_delay_adds_to_the_round_trip(echo_pair, tmp_path):
    baseline = echo_pair.ping(20)
    shaper = echo_pair.start_shaper(tmp_path, "--delay-ms", "50", "--direction", "egress").wait_ready()
    delayed = echo_pair.ping(20)
    assert shaper.stop() == 0
    assert delayed["lost"] == 0
    assert delayed["rtt_min_ms"] >= 50  # nothing may come back before its delay is served
    assert delayed["rtt_p50_ms"] - baseline["rtt_p50_ms"] < 50 + 150  # loose: a noisy 2-core host
    applied = shaper.events("applied")[0]
    assert (applied["delay_ms"], applied["direction"], applied["host"], applied["role"]) == (
        50.0, "egress", "shaper-test", "shaper")
    final = shaper.events("stats")[-1]
    assert final["final"] and final["delayed"] >= 20


def test_both_directions_delay_each_way(echo_pair, tmp_path):
    echo_pair.start_shaper(tmp_path, "--delay-ms", "20", "--jitter-ms", "2").wait_ready()
    result = echo_pair.ping(20)
    assert result["lost"] == 0
    assert result["rtt_min_ms"] >= 2 * (20 - 2)


def test_loss_drops_about_that_fraction_silently(echo_pair, tmp_path):
    shaper = echo_pair.start_shaper(tmp_path, "--loss", "0.2", "--direction", "egress").wait_ready()
    result = echo_pair.ping(400, interval_ms=1)
    assert shaper.stop() == 0
    assert 0.10 <= result["lost"] / result["sent"] <= 0.30
    # Every lost request was dropped by the shaper, none by a send() error (netprobe would crash).
    assert shaper.events("stats")[-1]["dropped"] == result["lost"]


def test_duplicate_sends_copies_that_arrive(echo_pair, tmp_path):
    shaper = echo_pair.start_shaper(tmp_path, "--duplicate", "0.5", "--direction", "egress").wait_ready()
    result = echo_pair.ping(200, interval_ms=1)
    assert shaper.stop() == 0
    assert result["lost"] == 0 and result["bad"] == 0
    assert 0.3 <= result["duplicates"] / result["sent"] <= 0.7
    assert shaper.events("stats")[-1]["duplicated"] == result["duplicates"]


def _udp_checksum_errors(pair: NamespacePair) -> int:
    lines = [line.split() for line in pair.run(pair.b, "cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("InCsumErrors")])


def test_corrupt_packets_fail_the_receivers_checksum(echo_pair, tmp_path):
    before = _udp_checksum_errors(echo_pair)
    shaper = echo_pair.start_shaper(tmp_path, "--corrupt", "1", "--direction", "egress").wait_ready()
    result = echo_pair.ping(50, interval_ms=1)
    assert shaper.stop() == 0
    assert result["received"] == 0
    assert _udp_checksum_errors(echo_pair) - before == 50
    assert shaper.events("stats")[-1]["corrupted"] == 50


def test_reorder_lets_some_packets_overtake(echo_pair, tmp_path):
    echo_pair.start_shaper(tmp_path, "--delay-ms", "30", "--reorder", "0.5", "--direction", "egress").wait_ready()
    result = echo_pair.ping(100, interval_ms=1)
    assert result["lost"] == 0
    assert result["out_of_order"] > 0
    assert result["rtt_min_ms"] < 30 <= result["rtt_max_ms"]


def test_rate_limits_a_udp_flood(pair, tmp_path):
    shaper = pair.start_shaper(tmp_path, "--rate", "1mbit", "--direction", "egress").wait_ready()
    sink = pair.spawn(pair.b, sys.executable, NETPROBE, "sink", "--port", "9100", "--idle-ms", "400")
    assert sink.stdout.readline().strip() == "ready"
    sent = pair.probe("blast", "--seconds", "0.5", "--size", "1000", port=9100)
    got = json.loads(sink.communicate(timeout=15)[0])
    assert shaper.stop() == 0
    # 1 mbit/s for the 0.5 s flood plus the 0.25 s queue draining: ~94 kB; unshaped, megabytes.
    assert sent["bytes"] > 1_000_000
    assert 20_000 < got["bytes"] < 200_000
    assert shaper.events("stats")[-1]["rate_dropped"] > 0


def test_set_changes_loss_while_running(echo_pair, tmp_path):
    shaper = echo_pair.start_shaper(tmp_path, "--direction", "egress").wait_ready()
    assert echo_pair.ping(30)["lost"] == 0
    done = shaper.set("--loss", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["loss"] == 1.0
    assert echo_pair.ping(30)["lost"] == 30
    assert shaper.set("--loss", "0").returncode == 0
    assert echo_pair.ping(30)["lost"] == 0
    bad = shaper.set("--reorder", "0.5")  # no delay to reorder against: refused, nothing changes
    assert bad.returncode == 2 and "bad --reorder" in bad.stderr and "needs --delay-ms > 0" in bad.stderr
    assert shaper.stop() == 0
    changed = shaper.events("changed")
    assert [c["loss"] for c in changed] == [1.0, 0.0]
    assert changed[0]["previous"]["loss"] == 0.0


def _leftovers(pair: NamespacePair) -> list[str]:
    rules = pair.run(pair.a, "iptables", "-S").stdout
    qdiscs = pair.run(pair.a, "tc", "qdisc", "show", "dev", "eth0").stdout
    links = pair.run(pair.a, "ip", "-o", "link").stdout
    found = [line for line in rules.splitlines() if "LAB-SHAPER" in line or "NFQUEUE" in line]
    found += [line for line in qdiscs.splitlines() if any(k in line for k in ("tbf", "netem", "ingress"))]
    found += [line for line in links.splitlines() if "shp-" in line]
    return found


def test_sigterm_removes_every_rule_qdisc_and_device(echo_pair, tmp_path):
    shaper = echo_pair.start_shaper(tmp_path, "--delay-ms", "5", "--loss", "0.01", "--duplicate", "0.01",
                                    "--rate", "10mbit").wait_ready()
    assert len(_leftovers(echo_pair)) >= 6  # hooks, chains' rules, tbf x2, ingress, ifb
    assert echo_pair.ping(20)["received"] > 0
    assert shaper.stop() == 0
    assert _leftovers(echo_pair) == []
    assert not shaper.ready.exists()
    assert shaper.records[-1]["event"] == "summary" and shaper.records[-1]["ok"] is True
    assert echo_pair.ping(20)["lost"] == 0  # and traffic flows plainly again


def test_run_cleans_up_what_a_killed_shaper_left(echo_pair, tmp_path):
    first = echo_pair.start_shaper(tmp_path, "--loss", "1", "--delay-ms", "5", "--rate", "5mbit").wait_ready()
    first.process.kill()
    first.finish()
    assert _leftovers(echo_pair)
    # Fail-open: its rules are still there, but with nobody on the queues (--queue-bypass)
    # the packets they pick go through instead of being blackholed.
    assert echo_pair.ping(20)["lost"] == 0
    second = echo_pair.start_shaper(tmp_path).wait_ready()
    assert echo_pair.ping(20)["lost"] == 0
    assert second.stop() == 0
    assert _leftovers(echo_pair) == []


def test_probe_reports_this_kernel_and_leaves_nothing(pair):
    done = pair.run(pair.a, sys.executable, "-m", "lab.shaper", "probe")
    report = json.loads(done.stdout)
    netem_error = _kernel_netem_error(pair)
    assert report["netem"] is (netem_error is None)
    assert report["backend"] == ("netem" if netem_error is None else "userspace")
    assert report["statistic"] is True and report["nfqueue"] is True and report["tbf"] is True
    assert "PROBE" not in pair.run(pair.a, "iptables", "-S").stdout
    assert "shp-probe" not in pair.run(pair.a, "ip", "-o", "link").stdout


def test_netem_backend_delays(echo_pair, tmp_path):
    error = _kernel_netem_error(echo_pair)
    if error is not None:
        pytest.skip(f"kernel has no netem: {error}")
    shaper = echo_pair.start_shaper(tmp_path, "--backend", "netem", "--delay-ms", "50",
                                    "--direction", "egress").wait_ready()
    result = echo_pair.ping(20)
    assert shaper.stop() == 0
    assert shaper.events("applied")[0]["backend"] == "netem"
    assert result["rtt_min_ms"] >= 50
    assert _leftovers(echo_pair) == []


def test_netem_backend_refused_where_the_kernel_lacks_it(pair, tmp_path):
    error = _kernel_netem_error(pair)
    if error is None:
        pytest.skip("the kernel has netem, so --backend netem is not refused")
    shaper = pair.start_shaper(tmp_path, "--backend", "netem", "--delay-ms", "5")
    assert shaper.finish() == 1
    assert "no netem" in shaper.events("error")[0]["detail"]
    assert shaper.records[-1]["event"] == "summary" and shaper.records[-1]["ok"] is False
    assert _leftovers(pair) == []


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux) to drop NET_RAW")
def test_duplicate_without_net_raw_is_refused_up_front(pair, tmp_path):
    without_raw = ("setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw")
    shaper = pair.start_shaper(tmp_path, "--delay-ms", "1", wrapper=without_raw).wait_ready()
    done = shaper.set("--duplicate", "0.5")
    assert done.returncode == 1 and "NET_RAW" in done.stderr
    assert shaper.stop() == 0
    assert shaper.events("error")[0]["reason"] == "change-failed"
    refused = pair.start_shaper(tmp_path, "--duplicate", "0.5", wrapper=without_raw)
    assert refused.finish() == 1
    assert "NET_RAW" in refused.events("error")[0]["detail"]
    assert _leftovers(pair) == []


def test_periodic_stats_come_while_packets_flow(echo_pair, tmp_path):
    shaper = echo_pair.start_shaper(tmp_path, "--delay-ms", "20", "--direction", "egress",
                                    "--stats-interval", "0.2").wait_ready()
    result = echo_pair.ping(40)
    assert shaper.stop() == 0
    assert result["lost"] == 0 and result["rtt_min_ms"] >= 20
    periodic = [r for r in shaper.events("stats") if not r.get("final")]
    assert len(periodic) >= 2, "stats every 0.2 s during the pings"
    assert [r["delayed"] for r in periodic] == sorted(r["delayed"] for r in periodic)  # counters only grow
    assert not shaper.events("error")
