"""The utility's web view at ``/ui``: pages served by the replica itself.

Templates render only the frame; one small script per page fetches the same ``/v1``
endpoints scripts and the CLI use, so the page and the CLI can never disagree.
:func:`replica.ui.router.install_ui` wires it into the app.
"""
