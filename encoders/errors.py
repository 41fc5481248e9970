"""Exceptions the encoders raise for mistakes a user can fix."""


class EncoderConfigError(Exception):
    """The model, weights or encoder settings cannot be used as given.

    Raised before any inference starts; the message names what to change.
    """
