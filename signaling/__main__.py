from .cli import main

if __name__ == "__main__":  # not when a spawned recorder process imports it as its parent's main
    main()
