from tf_rpp_lite import main

main()
