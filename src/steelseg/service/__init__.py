"""The service package: the HTTP app (``app``), its micro-batching (``batching``), the checks
made before a body is read (``guard``), the answers (``results``) and their declared shapes
(``schemas``), request ids, metrics and logs (``observe``, ``metrics``, ``logs``), the viewer
page (``viewer.html``) and the ``serve`` command (``serve``)."""
