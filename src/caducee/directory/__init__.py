"""The national directory (Annuaire Santé): model, import of the public extracts, search, FHIR
API and mailbox publication. See docs/directory.md.

Entry points: :func:`caducee.directory.open.open_store`,
:func:`caducee.directory.importer.import_extract`, :func:`caducee.directory.synth.generate`,
:func:`caducee.directory.api.build_app`, :func:`caducee.directory.publication.publish_mailbox`,
:func:`caducee.directory.sandbox.build_sandbox_directory`. Submodules are imported on demand.
"""

__all__: list[str] = []
