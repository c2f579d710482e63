"""The old name of the shared test helpers, kept only for the test files not yet moved into the tree's folders (they
import `tests.standin_server` / `standin_server`); everything lives in `tests/helpers.py`. Remove this file once no
test imports it."""

from helpers import FaultyServer, goal_policy, one_line_error, wait_for

__all__ = ["FaultyServer", "goal_policy", "one_line_error", "wait_for"]
