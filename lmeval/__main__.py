from .cli import main

# guarded: a child process of `compare --isolate` imports this module again
if __name__ == "__main__":
    main()
