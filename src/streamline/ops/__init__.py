"""What the commands do to a topology and its topics (produce, consume, replay, dead letters,
lag, lineage, ACLs, the demo): each returns data and prints nothing; `streamline.cli`
renders it.
"""
