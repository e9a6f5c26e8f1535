"""The report's drawing of a run with several networks: a bar per network, each host on its
own network with its address there, each router between the bars it joins, the capture on the
network it watched."""

from lab.html.topology import _overlap, topology


def _manifest():
    def net(name, address):
        return {name: {"ipv4_address": address}}

    services = {
        "server": {"labels": {"io.socketlab.role": "server"}, "network_mode": "service:server-net"},
        "server-net": {"labels": {"io.socketlab.role": "netns"}, "networks": net("internet", "10.2.0.3")},
        "nat": {"labels": {"io.socketlab.role": "router"},
                "networks": {**net("home", "10.1.0.2"), **net("internet", "10.2.0.2")}},
        "capture": {"labels": {"io.socketlab.role": "capture"}, "network_mode": "host"},
    }
    for i in range(1, 5):
        services[f"client{i}"] = {"labels": {"io.socketlab.role": "client"}, "network_mode": f"service:client{i}-net"}
        services[f"client{i}-net"] = {"labels": {"io.socketlab.role": "netns"}, "networks": net("home", f"10.1.0.{2 + i}")}
    networks = {"home": {"ipam": {"config": [{"subnet": "10.1.0.0/24"}]}},
                "internet": {"ipam": {"config": [{"subnet": "10.2.0.0/24"}]}}}
    return {"compose_config": {"services": services, "networks": networks},
            "scenario_model": {"server": {"port": 19200, "proto": ["tcp"], "mode": "async"}}}


def test_each_network_is_a_bar_and_each_host_sits_on_its_own():
    applied = {"role": "netns", "event": "applied", "service": "nat", "nat": ["masquerade"]}
    top = topology(_manifest(), [applied], {"interface": "lab-abc-1", "packets": 9, "file": "capture/lab.pcap"}, "")
    (home_x1, home_x2, home, home_label), (net_x1, net_x2, internet, _label) = top.bars
    assert (home, internet) == ("home", "internet") and home_label == "home · 10.1.0.0/24"
    boxes = {b.title: b for b in top.boxes}
    server, router = boxes["server"], boxes["nat"]
    assert net_x1 <= server.x + server.w / 2 <= net_x2 and server.lines[0] == "10.2.0.3:19200 tcp"
    assert router.kind == "router" and router.lines == ["10.1.0.2 10.2.0.2", "masquerade"]
    assert home_x2 <= router.x + router.w and router.x <= net_x1  # it straddles the two bars
    # Linked to both bars.
    ends = [x2 for x1, y1, x2, y2 in top.links if (x1, y1) == (router.x + router.w / 2, 140)]
    assert any(home_x1 <= x <= home_x2 for x in ends) and any(net_x1 <= x <= net_x2 for x in ends)
    # The clients under their own network, with their address there; the fourth summed up.
    clients = [b for b in top.boxes if b.kind == "client"]
    assert [b.lines[0] for b in clients] == ["10.1.0.3", "10.1.0.4"]
    assert all(home_x1 <= b.x and b.x + b.w <= home_x2 for b in clients)
    assert [b.title for b in top.boxes if b.kind == "more"] == ["+2 clients"]
    # An older run names only its bridge: `lab-<token>-1` is the second network's.
    assert len(top.capture_at) == 1 and net_x1 <= top.capture_at[0] <= net_x2
    assert not any(_overlap(top.capture, b) for b in top.boxes)


def test_capture_points_of_every_network_are_drawn_on_their_bars():
    points = [{"network": "home"}, {"network": "internet"}]
    top = topology(_manifest(), [], {"points": points, "packets": 9, "file": "capture/home.pcap"}, "")
    assert [any(x1 <= at <= x2 for at in top.capture_at) for x1, x2, _n, _l in top.bars] == [True, True]


def test_a_flat_run_keeps_its_one_bar():
    manifest = {"compose_config": {"services": {"server": {"labels": {"io.socketlab.role": "server"}},
                                                "client1": {"labels": {"io.socketlab.role": "client"}}},
                                   "networks": {"lab": {}}}}
    top = topology(manifest, [], None, "off")
    assert top.bars == [] and top.capture_at == [] and top.network.startswith("lab")

