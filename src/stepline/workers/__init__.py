"""Where Python and shell steps run: the executors beside the runner's own threads.

``placement.py`` picks a step's executor and turns what comes back into a ``StepOutcome``;
``processes.py`` keeps a pool of worker processes, each running ``process_main.py``, which
calls the function with ``remote.py`` (which also runs a shell step's command, from
``commands.py``, on a cluster worker). What the runner and a worker send each other is in
``messages.py``. The worker side imports only the standard library and stepline's light
modules (``context``, ``usercode``, ``errors``), so a worker starts in tens of milliseconds.

The runner keeps the run: a worker only computes one attempt of one item and answers with a
``Reply``; checkpoints, retries and ``on_item_error`` stay in the driver, identical on every
executor.
"""
