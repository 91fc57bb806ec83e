"""Proposers: what turns a parent kernel into a candidate edit of its evolvable file.

``base`` holds the interface every proposer implements (``ProposalRequest`` in,
``Proposal`` out, ``Proposer`` protocol) and the ``Budget`` they share; ``edits`` parses
and applies SEARCH/REPLACE blocks; ``workspace`` is the crate as a model explores it with
tools; ``anthropic`` is the Claude-backed proposer. Nothing here imports Ray: proposers
run wherever the evolution loop puts them.

``AnthropicProposer`` is not re-exported, so that importing the interface does not import
the SDK: ``from actors.evolve.proposers.anthropic import AnthropicProposer``.
"""

from actors.evolve.proposers.base import Budget, Proposal, ProposalRequest, Proposer

__all__ = ["Budget", "Proposal", "ProposalRequest", "Proposer"]
