"""Example jobs for beatd: the nightly signups count (``jobs.stats``)."""
