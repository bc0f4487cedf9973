"""Scale waits out over worker processes with SAQ, an asyncio job queue on Redis.

Needs the `saq` extra (`pip install 'jobpoll[saq]'`); `import jobpoll` never imports it. See
the README's "Scale out" section.
"""

from jobpoll._saq import POLL_FUNCTION, SaqWaits, load_result, result_to_json

__all__ = ["POLL_FUNCTION", "SaqWaits", "load_result", "result_to_json"]
