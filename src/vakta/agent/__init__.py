"""The endpoint agent (``vakta agent``): watches folders, scans files as they arrive, reports to the console.

Modules: ``identity`` (enrolment and the agent's secret), ``queue`` (the
offline-first SQLite alert queue), ``client`` (the console's agent API),
``watch`` (file events, debounce, default paths, new mounts), ``core`` (the
running agent: scanning, delivery, heartbeats), ``schedule`` (scheduled full scans
in a low-priority child process), ``cli`` (the commands).
"""
