"""Extract stage: passages + question -> evidence (+ rationale), between retrieval and generation.

Built so far (issue 7, in progress): LEAR's rewards (``rewards``), the tag format (``tags``), the
hard-knowledge-mask prompts (``prompts``) and SEER's expert weighting (``seer``); the RL and
preference objectives live in :mod:`rayapp.train.rl`. Not built yet: the trainers, the rollout
actors, the extractor deployment and the benchmarks.
"""

from rayapp.extract.prompts import answer_prompt, extractor_prompt, masked_answer_prompts
from rayapp.extract.rewards import REWARDS, register_reward
from rayapp.extract.tags import Parsed, parse_tags

__all__ = ["REWARDS", "register_reward", "parse_tags", "Parsed", "extractor_prompt", "answer_prompt",
           "masked_answer_prompts"]
