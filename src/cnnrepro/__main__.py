from cnnrepro.cli import main

raise SystemExit(main())
