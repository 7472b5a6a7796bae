package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// completionShells are the shells `completion` writes a script for.
var completionShells = []string{"bash", "zsh", "fish"}

func (a *app) completionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script for podvisorctl",
		Long: `Prints the completion script for a shell (cobra's), which completes
podvisorctl's verbs and flags. Load it in the running shell or install it:

  bash:  source <(podvisorctl completion bash)
         podvisorctl completion bash > /etc/bash_completion.d/podvisorctl
         (needs the bash-completion package)
  zsh:   source <(podvisorctl completion zsh)
         podvisorctl completion zsh > "${fpath[1]}/_podvisorctl"
         (with compinit enabled: autoload -U compinit; compinit)
  fish:  podvisorctl completion fish | source
         podvisorctl completion fish > ~/.config/fish/completions/podvisorctl.fish

The script runs podvisorctl itself ("podvisorctl __complete ...") to
complete, so it follows upgrades. For "kubectl podvisor", kubectl (1.26 or
later) completes a plugin's arguments by running kubectl_complete-podvisor
from PATH: make it a script that runs 'kubectl-podvisor __complete "$@"'.`,
		Example: `  source <(podvisorctl completion bash)
  podvisorctl completion fish > ~/.config/fish/completions/podvisorctl.fish`,
		ValidArgs: completionShells,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%s needs one argument, the shell: bash, zsh or fish (got %d: %q)", cmd.CommandPath(), len(args), args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return fmt.Errorf("shell %q: want bash, zsh or fish", args[0])
		},
	}
}

// completeVMPods completes the first argument with the VM pods of the
// namespace (-n, else the context's), prefixed with USER@ when the word
// has one (ssh). Errors complete nothing: a shell cannot show them.
func (a *app) completeVMPods(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	user, _, hasUser := strings.Cut(toComplete, "@")
	vms, err := a.listVMs(cmd.Context(), false, false)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, v := range vms {
		name := v.Name
		if hasUser {
			name = user + "@" + name
		}
		if strings.HasPrefix(name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(name, v.Phase+" on "+v.Node))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
