from dianfei.cli.main import main

main()
