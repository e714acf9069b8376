"""Hardware access for the PCM test chip: board link, typed drivers and the simulated board.

Layering: ``drivers.link`` (codec and transport) and ``drivers.board`` never import
``drivers.sim``; the simulator is reached only through a URL (``mockchip://`` or ``socket://``).
"""
