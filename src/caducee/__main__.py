from caducee.cli.main import main

raise SystemExit(main())
