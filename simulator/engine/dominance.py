"""Links that never decide a message's time on the fast engine, found two ways.

A link ``A`` whose every message also crosses a link ``B`` no faster than ``A`` (every route
through ``A`` goes through ``B``) never decides when a message ends, whether it was alone, what
an observing policy reads or a debt: :class:`~simulator.engine.fast_links.Links` keeps no
calendar for it (its module docstring, item 5, gives the argument). Which links those are
depends on the routes between the run's GPUs:

- :func:`dominated_links` routes every ordered pair and compares the sets of routes through
  each link — exact, but a million routes at 1,024 GPUs (a Dijkstra per destination, then a
  walk per pair: minutes);
- :func:`funnel_links` reads it off the graph's neighbours without routing: a message that
  enters a switch over ``A`` and can leave it over one link only (every other neighbour is
  where it came from, or a GPU or host that no route ends at or passes through) also crosses
  that link, and symmetrically for the one link it can have come in by. It finds a subset of
  what :func:`dominated_links` finds (links a route must follow on from, never links that merely
  happen to share their routes); on every preset topology, the same links among those any route
  crosses (tested). It holds only where no route passes through a GPU or host (the path rule
  of :mod:`simulator.network.paths` allows one where a pair has no other path), which it
  checks: some strongly connected set of switches is reached from every endpoint and reaches
  every endpoint, so every pair has a path through switches only; otherwise it finds nothing.

``Links`` takes the first up to :attr:`~simulator.engine.fast_links.Links.DOMINANCE_PAIRS`
ordered pairs and the second above (about 0.1 s for ``cluster_1024``'s 10,304 links).
"""

from __future__ import annotations

import networkx as nx

from simulator.network.paths import endpoint_only


def dominated_links(fabric, endpoints: list[str]) -> frozenset[int]:
    """The links no message's time depends on, among messages between ``endpoints`` (see the
    module docstring): each link ``A`` such that another link ``B`` carries every route between
    the endpoints that ``A`` carries, at a line rate no higher than ``A``'s. Of links carrying
    the same routes at the same rate, all but the one of lowest index."""
    line = fabric.link_bandwidth
    users: dict[int, set[int]] = {}  # link -> the routes (by number) through it
    routes = []
    for a in endpoints:
        for b in endpoints:
            if a != b:
                links = fabric.message_route(a, b)[2]
                for i in links:
                    users.setdefault(i, set()).add(len(routes))
                routes.append(links)
    # a dominating link is on every route through the link: on the first, say (a link is not
    # its own: the same routes at the same rate, and not of lower index)
    return frozenset(
        i for i, mine in users.items()
        if any(line[j] <= line[i] and mine <= users[j]
               and (line[j] < line[i] or len(users[j]) > len(mine) or j < i)
               for j in routes[next(iter(mine))]))


def funnel_links(fabric, endpoints: list[str]) -> frozenset[int]:
    """Links no message's time depends on, among messages between ``endpoints``, found from
    the graph's neighbours alone (module docstring): a link ``A = u → v`` is followed by
    ``B = v → w`` wherever ``v`` is a switch whose only neighbour a route can go on to, besides
    ``u``, is ``w``, and preceded by ``B = t → u`` wherever ``u`` is a switch whose only neighbour
    a route can come from, besides ``v``, is ``t``; each such ``B`` no faster than ``A``
    dominates it. Links so related both ways carry the same routes at the same rate: of those,
    all are dropped where one is dominated by a link outside them, else all but the one of lowest
    index. Empty where some route may pass through a GPU or host."""
    g = fabric.graph
    line = fabric.link_bandwidth
    ends = set(endpoints)
    switches = {n for n in g if not endpoint_only(g, n)}  # the rest: GPUs and hosts
    if not ends or not ends.isdisjoint(switches) or not _through_switches(g, switches, ends):
        return frozenset()

    def way(n: str, came: str) -> bool:  # a route can step from a switch onto n, not from came
        return n != came and (n in ends or n in switches)

    index = fabric.link_index
    follows = nx.DiGraph()  # A → B: every route through A goes through B, no faster
    for (u, v), i in index.items():
        if v in switches:
            on = [w for w in g.successors(v) if way(w, u)]
            if len(on) == 1 and line[j := index[(v, on[0])]] <= line[i]:
                follows.add_edge(i, j)
        if u in switches:
            back = [t for t in g.predecessors(u) if way(t, v)]
            if len(back) == 1 and line[j := index[(back[0], u)]] <= line[i]:
                follows.add_edge(i, j)
    sets = nx.condensation(follows)  # links related both ways: one node (a link related to
    # none is in no node: kept)
    dropped: set[int] = set()
    for c, data in sets.nodes(data=True):
        same = data["members"]
        dropped |= same if sets.out_degree(c) else same - {min(same)}
    return frozenset(dropped)


def _through_switches(g: nx.DiGraph, switches: set[str], ends: set[str]) -> bool:
    """Whether every ordered pair of ``ends`` has a path through switches only: the largest
    strongly connected set of switches is entered from every end and left to every end."""
    hub = max(nx.strongly_connected_components(g.subgraph(switches)), key=len, default=set())
    return all(any(v in hub for v in g.successors(e)) and any(u in hub for u in g.predecessors(e))
               for e in ends)
