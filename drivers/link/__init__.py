"""The board link: a pure frame codec (``protocol``) and a pyserial transport (``transport``)."""
