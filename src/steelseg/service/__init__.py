"""The service package: the HTTP app (``app``), its micro-batching (``batching``), the checks
made before a body is read (``guard``), the answers (``results``), the viewer page
(``viewer.html``) and the ``serve`` command (``serve``)."""
