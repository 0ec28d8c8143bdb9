"""Presets of the session generator, fitted to published aggregates of real agent traffic.

``copilot_2026`` — GitHub Copilot's agentic sessions, June 1–7 2026 (Azure/AzurePublicDataset,
``GitHubCopilotCodingAgentDataset2026.md`` and ``analysis/GitHubCopilotCodingAgents/
DATASET_CARD.md``, CC-BY 4.0; Liu et al., "Agentic Coding in the Wild: Characterizing GitHub
Copilot Traces at Production Scale", arXiv 2608.00101). The release's aggregates
(:data:`COPILOT_2026_TARGETS`): 301,026 sessions, 1,189,581 user turns, 9,310,255 LLM calls,
7,767,261 tool batches with 8,681,190 tool calls, 631.4 B prompt tokens, 4.91 B completion
tokens and 540.95 B cached prompt tokens — per session 3.95 turns, per turn 7.83 calls and 7.3
tool calls, per call 67.8 k prompt and 527 completion tokens, 85.7 % of prompt tokens cached.

Published and used directly: ``turns_mean`` = 3.95; ``tools_per_batch_mean`` = 1.12 (8.68 M tool
calls / 7.77 M batches). Fitted (chosen so the generated aggregates match the targets at 200+
sessions, ``benchmarks/copilot_preset.py`` prints the comparison): ``batches_mean`` (5.4 main
batches per turn, with sub-agents and compactions giving 7.83 calls), ``output_tokens_mean``
(425: the summaries of compactions lift the mean to 527), ``tool_tokens_mean`` (16 k) and
``file_tokens`` (6 k), which set the new tokens per call and so the cached share, and
``compact_tokens`` (150 k), which caps the context and so sets the mean prompt. Assumed (no
published figure; see docs/accuracy.md): the system prompts (12 k main, 4 k sub-agents),
repository instructions (1 k), user messages (2 k with attachments), the tool mix (40 % reads,
20 % edits), sub-agent spawning (2 % of batches, 2 sub-agents of 4 batches), the summary
(3 k), repository and file sizes and popularity, and every duration (tool 3 s, think 60 s,
1 s + 20 ms per output token per call).

The release's cached share comes from the providers' caches (bounded, with expiry); the
generated trace's ``cached_prompt_fraction`` is that of an *unbounded* prefix cache. Matching
one with the other makes the generated contexts carry as much new content per call as the real
cache missed (9.7 k tokens per call), which is an upper bound on the new content itself.
"""

from __future__ import annotations

import dataclasses

from workloads.sessions import SessionParams

__all__ = ["COPILOT_2026_TARGETS", "PRESETS", "compare", "session_params"]

#: The published aggregates the ``copilot_2026`` preset reproduces (per session / turn / call).
COPILOT_2026_TARGETS: dict[str, float] = {
    "turns_per_session": 1_189_581 / 301_026,  # 3.95
    "calls_per_turn": 9_310_255 / 1_189_581,  # 7.83
    "tool_calls_per_turn": 8_681_190 / 1_189_581,  # 7.30
    "prompt_tokens_per_call": 631.4e9 / 9_310_255,  # 67.8 k
    "completion_tokens_per_call": 4.91e9 / 9_310_255,  # 527
    "cached_prompt_fraction": 540.95e9 / 631.4e9,  # 0.857
}

#: Preset name -> its :class:`SessionParams` (the dataclass defaults are the Copilot fit).
PRESETS: dict[str, SessionParams] = {"copilot_2026": SessionParams()}

#: Preset name -> the aggregates it is fitted to.
TARGETS: dict[str, dict[str, float]] = {"copilot_2026": COPILOT_2026_TARGETS}


def is_preset(name: object) -> bool:
    """Whether ``name`` names a preset (a list or a table from a scenario file does not)."""
    return isinstance(name, str) and name in PRESETS


def session_params(preset: str, **overrides) -> SessionParams:
    """The preset's parameters with some fields replaced; ``ValueError`` for an unknown
    preset or field (the message names them)."""
    if not is_preset(preset):
        raise ValueError(f"preset {preset!r} is unknown; known: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(SessionParams)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"{bad[0]} is not a session parameter; known: {', '.join(sorted(fields))}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def compare(stats: dict, preset: str = "copilot_2026") -> dict[str, dict[str, float]]:
    """Each target of ``preset`` beside the trace's value (``trace_stats`` keys): ``target``,
    ``value`` and ``relative_error``."""
    out = {}
    for key, target in TARGETS[preset].items():
        value = float(stats[key])
        out[key] = {"target": target, "value": value, "relative_error": value / target - 1.0}
    return out
