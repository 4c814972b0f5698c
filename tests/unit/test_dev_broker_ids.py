"""The dev broker's KRaft cluster ids: what the storage tool accepts as the value of -t."""

from __future__ import annotations

import base64

from streamline.dev.broker import new_cluster_id


def test_cluster_ids_are_base64url_uuids_that_never_look_like_an_option() -> None:
    # one random id in 64 starts with '-': 2,000 draws miss that with odds of about 1e-14
    ids = [new_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 and len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
