"""The board link: a pure frame codec (``protocol``) and a transport over pyserial (``transport``)."""
