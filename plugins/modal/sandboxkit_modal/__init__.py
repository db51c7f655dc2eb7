"""sandboxkit's Modal provider (``provider="modal"``) and a Docker-backed Modal emulator.

The provider lives in :mod:`sandboxkit_modal.provider` (it imports modal); the emulator in
:mod:`sandboxkit_modal.emulator`. This package imports neither, so registering the plugin stays cheap.
"""
