"""The one exception type for mistakes a user can fix."""


class FeatxError(Exception):
    """A problem the user caused and can fix (bad file, wrong column, mismatched store).

    The CLI prints it as a single line ``featx: error: <message>`` and exits with
    status 2, so the message must say what went wrong and how to fix it.
    """
