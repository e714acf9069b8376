"""Programming PCM conductances: the building blocks of the ``program`` procedure.

* :mod:`procedures.programming.targets`: weights to signed per-cell conductance targets
  (the cell layout, Gmax, the line-current limit).
* :mod:`procedures.programming.iterative`: the published iterative program-and-verify
  algorithm (ODP / TDP), vectorised over all devices of a core and over cores.
* :mod:`procedures.programming.gdp`: GDP, refinement driven by the MVM error.

The procedure itself, :class:`procedures.program_verify.ProgramVerify`, drives them.
"""
