// Confirmations through the page's one <dialog id="confirm">, opened modal; focus goes back to
// the control that asked once it closes.
//
// The answer comes from the buttons, Escape (`cancel`) and the backdrop, never from the `close`
// event: that event is queued, so the close of one question can arrive after the next question
// was opened (a fast keyboard user), and would answer it.

let wired = false;
let pending = null; // { resolve, opener } of the question on screen

function parts() {
  return {
    dialog: document.getElementById("confirm"),
    title: document.getElementById("confirm-title"),
    message: document.getElementById("confirm-message"),
    yes: document.getElementById("confirm-yes"),
    no: document.getElementById("confirm-no"),
  };
}

function answer(value) {
  if (!pending) return;
  const { resolve, opener } = pending;
  pending = null;
  const { dialog } = parts();
  if (dialog.open) dialog.close(value ? "yes" : "no");
  if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
  resolve(value);
}

function wire({ dialog, yes, no }) {
  if (wired) return;
  wired = true;
  yes.addEventListener("click", () => answer(true));
  no.addEventListener("click", () => answer(false));
  dialog.addEventListener("cancel", () => answer(false));
  // A click on the backdrop (outside the dialog's box) is a "no".
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) answer(false);
  });
}

/**
 * Asks a question; resolves true for "yes", false for "no", Escape or the backdrop.
 * options: title, message, yes (label), no (label), danger (a red "yes").
 */
export function confirmAction({ title, message, yes = "Confirm", no = "Cancel", danger = false }) {
  const dialogParts = parts();
  const { dialog } = dialogParts;
  if (pending || dialog.open) return Promise.resolve(false);
  wire(dialogParts);
  const opener = document.activeElement;
  dialogParts.title.textContent = title;
  dialogParts.message.textContent = message;
  dialogParts.yes.textContent = yes;
  dialogParts.no.textContent = no;
  dialogParts.yes.classList.toggle("danger", danger);
  dialogParts.yes.classList.toggle("button-primary", !danger);
  dialog.returnValue = "";
  return new Promise((resolve) => {
    pending = { resolve, opener };
    dialog.showModal();
    // The harmless answer has the focus: Enter by habit does not delete anything.
    dialogParts.no.focus();
  });
}

/** Closes the question on screen, if any, as a "no" (the page it belongs to is left). */
export function dismissConfirm() {
  answer(false);
}
