from protoreg.worker.bootstrap import main

main()
