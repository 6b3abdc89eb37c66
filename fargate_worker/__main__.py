from fargate_worker.worker import main

raise SystemExit(main())
