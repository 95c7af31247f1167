// Subcommand registry: each cmd_*.cc file registers its subcommand with a static CommandRegistrar.
//
// The CLI is an executable (its objects are all linked), so static registration is reliable here.
// A command's setup function adds options to its CLI11 subcommand and returns the function to run;
// the run function returns the process exit code. qforge::Error thrown from it becomes exit code 1.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace qforge::cli {

using RunFn = std::function<int()>;
using SetupFn = std::function<RunFn(CLI::App& sub)>;

struct CommandSpec {
  std::string name;
  std::string description;
  SetupFn setup;
};

std::vector<CommandSpec>& CommandRegistry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string description, SetupFn setup) {
    CommandRegistry().push_back({std::move(name), std::move(description), std::move(setup)});
  }
};

}  // namespace qforge::cli
