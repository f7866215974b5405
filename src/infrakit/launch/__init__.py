"""Running plugins: kinds from entry points (``registry``), serving them in-process (``host``), and
the public one-liner for plugin authors (``serve``)."""
